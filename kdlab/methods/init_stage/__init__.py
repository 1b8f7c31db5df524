"""RepDistiller's methods with an initialisation stage: FSP, AB and FT.

Importing this package registers their loss terms: ``fsp``, ``ab`` and ``ft``
(what a config names) and ``fsp_init``, ``ab_init`` and ``ft_init`` (internal:
the one term of each initialisation run, which the main term sets up as a
prerequisite the trainer runs first, as SSKD's teacher head; see
:mod:`kdlab.methods.init_stage.stage`).
"""

# importing the term modules registers their terms
from kdlab.methods.init_stage.ab import ABInitTerm, ABTerm, ab_stage
from kdlab.methods.init_stage.fsp import FSPInitTerm, FSPTerm, fsp_stage
from kdlab.methods.init_stage.ft import FTInitTerm, FTTerm, ft_init_lr, ft_stage
from kdlab.methods.init_stage.modules import FrozenParaphraser, Paraphraser, Translator, ab_connectors
from kdlab.methods.init_stage.stage import InitSettings, InitStage, configured_weight
from kdlab.methods.init_stage.stem import StemTap, make_tap, stem_module

__all__ = [
    "ABInitTerm",
    "ABTerm",
    "FSPInitTerm",
    "FSPTerm",
    "FTInitTerm",
    "FTTerm",
    "FrozenParaphraser",
    "InitSettings",
    "InitStage",
    "Paraphraser",
    "StemTap",
    "Translator",
    "ab_connectors",
    "ab_stage",
    "configured_weight",
    "fsp_stage",
    "ft_init_lr",
    "ft_stage",
    "make_tap",
    "stem_module",
]
