"""privehr.learning: models and local training on a site's own tensors.

- ``models``       ``make_model``, flat-vector views (``get_flat``/``set_flat``), ``Estimator``
- ``train``        ``local_train`` (SGD/Adam, FedProx term), ``LocalTrainConfig``, ``predict_proba``
- ``strategies``   weighted FedAvg of deltas, server optimisers (FedAvgM, FedAdam), presets
- ``split``        patient-disjoint, label-stratified train/test split
- ``standardize``  federated standardisation from summable sufficient statistics

Submodules are not imported here, so ``privehr.learning.split`` does not pull in torch.
"""
