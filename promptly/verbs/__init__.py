"""Every entry point of promptly, one module per verb (`promptly <verb>`), beside the Hydra entry
decorator (`entry.py`), the dispatcher (`cli.py`) and the entry-config schemas (`schemas.py`).

Read this folder to see the whole product: each verb module composes its config, wires the stage
packages together and reports. The stage packages (store, ingest, data, model, evaluation, bias,
publish, serving, launch, notify, qa) are libraries: they never import from here
(tests/test_import_layers.py).
"""
