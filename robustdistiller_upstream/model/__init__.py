"""The student model (DistilHuBERT shape)."""

from robustdistiller_upstream.model.config import StudentConfig
from robustdistiller_upstream.model.student import StudentModel, StudentOutput

__all__ = ["StudentConfig", "StudentModel", "StudentOutput"]
