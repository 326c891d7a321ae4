# The one model-server image for every backend: SageMaker runs it as `docker run <image> serve`
# with the model unpacked in /opt/ml/model and traffic on port 8080; the kubernetes backend and
# infra/endpoint.py run the same entrypoint with --model or --model-dir.
#   docker build -f docker/serving.Dockerfile -t fabric-serving:0.1.0 .
FROM python:3.11-slim
WORKDIR /opt/fabric
COPY requirements.lock pyproject.toml README.md ./
RUN grep -v '^torch==' requirements.lock > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt
COPY fabric ./fabric
RUN pip install --no-cache-dir --no-deps .
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["python", "-m", "fabric.serving", "--host", "0.0.0.0", "--port", "8080"]
CMD ["serve"]
