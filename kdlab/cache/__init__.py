"""Teacher-output cache: run the teacher once, train many students from it.

``kdlab cache-teacher CONFIG`` (or any run with ``distill.teacher_cache`` set,
when the cache is missing) runs the frozen teacher over a fixed, replayable
schedule of augmented batches and stores, per epoch, step and image: the
sample index, the augmentation parameters, a checksum of the network input
and the teacher outputs the loss terms need (full fp16 logits, top-k logits,
fp16 embeddings). Student runs replay the exact images from the stored
parameters and read the teacher's answers instead of running it. With several
teachers (``teachers:``) each cacheable teacher has its own cache in a
subfolder named by its key (:class:`TeacherCacheSet` reads them together).

See docs/performance.md for the format, the top-k approximation and the
measured speed-ups.
"""

from __future__ import annotations

from .build import build_teacher_cache
from .errors import TeacherCacheError, TeacherCacheMismatchError
from .key import cache_key
from .outputs import required_outputs
from .replay import CachedStandardTeacherStream, CachedTeacherStream
from .soft_labels import compress_logits, reconstruct_logits, resolve_top_k
from .standalone import build_cache_from_config, build_caches_from_config
from .storage import cache_exists
from .teacher_cache import TeacherCache
from .teacher_caches import TeacherCacheSet
from .use import ensure_teacher_cache, run_cache_key, use_teacher_cache

__all__ = [
    "CachedStandardTeacherStream",
    "CachedTeacherStream",
    "TeacherCache",
    "TeacherCacheSet",
    "TeacherCacheError",
    "TeacherCacheMismatchError",
    "build_cache_from_config",
    "build_caches_from_config",
    "build_teacher_cache",
    "cache_exists",
    "cache_key",
    "compress_logits",
    "ensure_teacher_cache",
    "reconstruct_logits",
    "required_outputs",
    "resolve_top_k",
    "run_cache_key",
    "use_teacher_cache",
]
