"""The `headwise` command line, the top layer: it parses flags and calls the libraries below
(pipeline, kubeflow, serving, benchmarks); nothing imports it."""
