"""What a run records of its machine: the dtype its test figures really used, the hardware, the software."""

import platform

import pytest

from music_genre.training import environment
from tests.conftest import make_model


@pytest.mark.parametrize(
    ("inference_dtype", "native", "expected"),
    [("bfloat16", True, "bfloat16"), ("bfloat16", False, "float32"), ("float32", True, "float32")],
)
def test_evaluation_dtype_is_the_one_the_model_computed_in(monkeypatch, inference_dtype, native, expected):
    monkeypatch.setattr(environment, "native_bfloat16", lambda device_type: native)
    record = environment.evaluation_record(make_model(inference_dtype=inference_dtype), rows=7)
    assert record["dtype"] == expected
    assert (record["split"], record["rows"], record["device"]) == ("test", 7, "cpu")
    assert record["hardware"].endswith("no native bfloat16" if not native else ", native bfloat16")


def test_hardware_names_the_cpu_and_software_names_each_package():
    assert environment.cpu_name() in environment.hardware("cpu")
    versions = environment.software_versions()
    assert versions["python"] == platform.python_version()
    assert set(versions) == {"python", *environment.SOFTWARE}
    assert "not installed" not in versions.values()  # all are dependencies of the project
