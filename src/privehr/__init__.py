"""privehr: federated learning on Electronic Health Records with measurable privacy.

Where a patient record stops being raw and where an update starts being protected can be
read off the package layout:

- ``privehr.ehr``        raw exports in, de-identified store out (the only code that reads raw files)
- ``privehr.learning``   models and local training on a site's own tensors
- ``privehr.privacy``    differential privacy: DP events, accountants, the per-site ledger, DP-SGD
- ``privehr.secure``     protection of what leaves a site: secure aggregation, CKKS encryption
- ``privehr.federation`` messages, the site's outbound gate, coordinator, simulator, studies
- ``privehr.evaluation`` metrics and the attacks/audits we run against our own models
- ``privehr.report``     report and slides, rendered from a run directory alone
"""

__version__ = "0.1.0"
