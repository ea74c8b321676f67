"""The stage runtime: the ``Stage`` base class, the pipeline that runs stages, the stage-type
registry, and what provider stages share (errors, retries, circuit breakers, worker threads)."""
