"""Borrowing from published series: evidence tables, MAP and robust MAP priors,
prior effective sample size, prior-data conflict."""

from .borrow import Borrowing, PreparedBorrowing
from .conflict import Conflict, prior_data_conflict
from .evidence import DESIGNS, Evidence, EvidenceError, example_evidence_path, read_evidence
from .map_prior import MAPPrior, map_prior
from .mixture import BetaMixture, NormalMixture, automixfit, fit_normal_mixture

__all__ = [
    "DESIGNS",
    "BetaMixture",
    "Borrowing",
    "PreparedBorrowing",
    "Conflict",
    "Evidence",
    "EvidenceError",
    "MAPPrior",
    "NormalMixture",
    "automixfit",
    "example_evidence_path",
    "fit_normal_mixture",
    "map_prior",
    "prior_data_conflict",
    "read_evidence",
]
