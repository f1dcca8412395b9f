"""Kubeflow Pipelines v2 compilation of the headwise pipeline and its serving manifests."""
