"""Multi-task enhancement head (RobustDistiller, DESIGN 1): used only in pretraining, dropped at export."""

from robustdistiller_upstream.enhance.head import EnhanceConfig, EnhancementHead, EnhancementOutput
from robustdistiller_upstream.enhance.losses import enhancement_loss

__all__ = ["EnhanceConfig", "EnhancementHead", "EnhancementOutput", "enhancement_loss"]
