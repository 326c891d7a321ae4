"""The SageMaker backend: the lifecycle on managed AWS through boto3 (see docs/sagemaker.md)."""
