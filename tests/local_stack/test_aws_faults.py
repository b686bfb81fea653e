"""The fault proxy's fault specs, as the command line takes them; bad ones are refused by name."""

from __future__ import annotations

import re

import pytest

from local_stack.aws_faults import Fault


def test_a_spec_names_operation_kind_count_and_probability():
    assert Fault.parse("eks.CreateCluster=throttle:3@0.5") == Fault("eks.CreateCluster", "throttle", 3, 0.5)
    assert Fault.parse("fsx.*=lost") == Fault("fsx.*", "lost", 1, 1.0)
    assert Fault("fsx.*", "503").matches("fsx", "CreateFileSystem")
    assert not Fault("eks.CreateCluster", "503").matches("eks", "CreateNodegroup")


@pytest.mark.parametrize(("spec", "refused"), [("eks.CreateCluster=teapot", "kind 'teapot'"),
                                               ("CreateCluster=throttle", "operation 'CreateCluster'"),
                                               ("eks.CreateCluster=500:0", "times must be >= 1"),
                                               ("eks.CreateCluster=500@1.5", "probability in (0, 1]")])
def test_a_bad_spec_is_refused_naming_what_is_wrong(spec, refused):
    with pytest.raises(ValueError, match=re.escape(refused)):
        Fault.parse(spec)
