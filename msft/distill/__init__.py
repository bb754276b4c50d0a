"""TimeDistill-style distillation of any forecaster into a small MLP student (docs/design.md §5).

Not imported by ``import msft``. Command line (the runner's): ``msft-distill --help``.
"""

from msft.distill.losses import DistillConfig, distillation_loss, match_loss, period_loss, scale_loss
from msft.distill.student import MLPStudent, StudentConfig, load_student
from msft.distill.teacher import (
    ChannelIndependent,
    HookTeacher,
    MSFTTeacher,
    TeacherCache,
    cache_name,
    cache_teacher,
    load_teacher,
    msft_teacher,
    save_teacher,
    teacher_outputs,
)
from msft.distill.train import FitResult, epoch_lr, evaluate_mse, fit_student

__all__ = [
    "ChannelIndependent",
    "DistillConfig",
    "FitResult",
    "HookTeacher",
    "MLPStudent",
    "MSFTTeacher",
    "StudentConfig",
    "TeacherCache",
    "cache_name",
    "cache_teacher",
    "distillation_loss",
    "epoch_lr",
    "evaluate_mse",
    "fit_student",
    "load_student",
    "load_teacher",
    "match_loss",
    "msft_teacher",
    "save_teacher",
    "period_loss",
    "scale_loss",
    "teacher_outputs",
]
