"""The model's variable names, in one place.

Every module that reads a posterior (summary, diagnostics, checks, validation,
sensitivity) names variables through these constants, so a renamed variable is
one edit and a misspelled one an ``AttributeError`` rather than a silent miss.
"""

from __future__ import annotations

# -- random variables and deterministics (posterior groups) -----------------
INTERCEPT = "intercept"
REGIMEN_SD = "regimen_sd"
REGIMEN_Z = "regimen_z"  # standardised regimen deviations (no pooling: own log-odds)
REGIMEN_LOGIT = "regimen_logit"
EXCHANGEABILITY_WEIGHT = "exchangeability_weight"
NONEXCHANGEABLE_Z = "nonexchangeable_z"  # EXNEX: standardised nonexchangeable log-odds
EXCHANGEABILITY_SELECTOR = "exchangeability_selector"  # EXNEX: Uniform(0, 1), picks δ
SEVERITY_SHIFT = "severity_shift"
SEVERITY_EFFECT = "severity_effect"
INTERACTION_SD = "interaction_sd"
INTERACTION_Z = "interaction_z"
INTERACTION = "interaction"
CUTPOINT_GAP = "cutpoint_gap"
TYPICAL_LOGIT = "typical_logit"  # regimen x severity log-odds at a site with effect 0
SITE_SD = "site_sd"
SITE_Z = "site_z"
SITE_EFFECT = "site_effect"
PATIENT_SD = "patient_sd"
PATIENT_Z = "patient_z"
PATIENT_EFFECT = "patient_effect"
COVARIATE_EFFECT = "covariate_effect"
# borrowing from published series (model.external)
BORROWED_LOGIT = "borrowed_logit"  # map / robust_map: the borrowed regimens' log-odds
BORROWED_MEAN = "borrowed_mean"  # joint: mean log-odds across studies of a regimen
BORROWED_TAU = "borrowed_tau"  # joint: between-study SD of a regimen
BORROWED_Z = "borrowed_z"  # joint: the cohort's standardised study effect
EXTERNAL_Z = "external_z"  # joint: each external study's standardised effect
EXTERNAL_RESPONDERS = "external_responders"  # joint: the external studies' CR counts
# per cell and response category: the log-probability the likelihood uses. Not
# stored while sampling; computed from the graph for LOO and predictive checks.
CATEGORY_LOG_PROB = "category_log_prob"

# -- data ---------------------------------------------------------------------
# per cell: index of its regimen, severity, site (and patient), in that column order
CELL_INDEX = "cell_index"
# every scalar: prior hyper-parameters (prior__<prior>__<parameter>), switches, outcome
MODEL_SCALARS = "model_scalars"
COVARIATE_VALUES = "covariate_values"  # per cell and covariate, standardised
N_EVALUABLE = "n_evaluable"
N_RESPONDERS = "n_responders"
# per cell: log C(n, y), the binomial likelihood's constant, computed once from the data
LOG_BINOMIAL_COEFFICIENT = "log_binomial_coefficient"
RESPONSE_COUNTS = "response_counts"
OUTCOME_IS_ORR = "outcome_is_orr"  # a scalar of MODEL_SCALARS
REGIMEN_PRIOR_SHIFT = "regimen_prior_shift"
MIXTURE_WEIGHT = "mixture_weight"  # (borrowed regimen, component) of a MAP prior
MIXTURE_MEAN = "mixture_mean"
MIXTURE_SD = "mixture_sd"
# borrowing: the positions, among the cohort's regimens, of the borrowed ones and of
# the rest (data, so one compiled model serves every choice of borrowed regimens)
BORROWED_INDEX = "borrowed_index"
OWN_INDEX = "own_index"
STUDY_REGIMEN = "study_regimen"  # per external study: index of its borrowed regimen
STUDY_N = "study_n"
STUDY_CR = "study_cr"

# -- observed -----------------------------------------------------------------
RESPONDERS = "responders"  # binary models: binomial count of responders per cell
RESPONSES = "responses"  # ordinal model: multinomial NR / PR / CR counts per cell

# -- groups of names ------------------------------------------------------------
# checked for convergence (R-hat, ESS): the parameters a summary is made of
CONVERGENCE_CHECKED = (
    REGIMEN_LOGIT,
    INTERCEPT,
    REGIMEN_SD,
    SEVERITY_EFFECT,
    SITE_EFFECT,
    SITE_SD,
    INTERACTION_SD,
    TYPICAL_LOGIT,
    PATIENT_SD,
    COVARIATE_EFFECT,
    CUTPOINT_GAP,
    BORROWED_TAU,
)
# between-group standard deviations of log-odds, reported in the summary
SCALE_PARAMETERS = (REGIMEN_SD, SITE_SD, INTERACTION_SD, PATIENT_SD)
# what a power-scaling sensitivity check looks at
POWER_SCALING_CHECKED = (REGIMEN_LOGIT, SEVERITY_EFFECT, SITE_SD, REGIMEN_SD, INTERACTION_SD)
# response categories of the ordinal model, lowest first
ORDINAL_CATEGORIES = ("NR", "PR", "CR")
BINARY_CATEGORIES = ("non-responder", "responder")
