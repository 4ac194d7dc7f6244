"""Test instruments that play the parts of Seldon Core 2 that surround the engine.

The engine never calls a model: Seldon's model gateway does, between a model's ``inputs`` and ``outputs``
topics. To test the engine without Kubernetes, Triton or MLServer we need stand-ins for those pieces:

* :mod:`dataflow.testing.models` - tiny deterministic models (pure functions, no I/O) with the maths and
  error texts of the models used by Seldon's sample pipelines and by our bug-report cases;
* :mod:`dataflow.testing.gateway` - a model gateway that serves those models over real Kafka topics,
  with the reference gateway's key, partition and header rules.

The pipeline gateway's part (send a request to a pipeline, wait for its answer) is product code, in
:mod:`dataflow.client`, because users need it too. Nothing here imports faust: these instruments must
keep working when the engine under test is broken.
"""
