"""Time-DPD: a frozen decoder LLM reprogrammed for forecasting, and its msft spec.

Importing this package registers the ``time_dpd`` backbone spec with msft.
"""

from msft_backbones.time_dpd.llm import DEEPSEEK_R1_DISTILL_QWEN_7B, default_llm_config
from msft_backbones.time_dpd.model import DEFAULT_LLM, RevIN, TimeDPD, TimeDPDConfig
from msft_backbones.time_dpd.prompt import PromptStatistics, format_prompt, prompt_statistics
from msft_backbones.time_dpd.spec import TimeDPDSpec

__all__ = [
    "DEEPSEEK_R1_DISTILL_QWEN_7B",
    "DEFAULT_LLM",
    "PromptStatistics",
    "RevIN",
    "TimeDPD",
    "TimeDPDConfig",
    "TimeDPDSpec",
    "default_llm_config",
    "format_prompt",
    "prompt_statistics",
]
