"""Typed experiment configuration: schema, YAML loading, overrides, validation."""

from kdlab.config.loader import (
    ConfigError,
    all_keys,
    dump_yaml,
    flatten_config,
    from_dict,
    load_config,
    merge,
    to_dict,
)
from kdlab.config.schema import (
    Config,
    DataConfig,
    DistillConfig,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TeacherConfig,
    TrainerConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "LoggingConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TeacherConfig",
    "TrainerConfig",
    "all_keys",
    "dump_yaml",
    "flatten_config",
    "from_dict",
    "load_config",
    "merge",
    "to_dict",
]
