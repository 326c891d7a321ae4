"""The HTTP model server (ASGI on ONNX Runtime) shared by the local, SageMaker and Kubernetes backends."""
