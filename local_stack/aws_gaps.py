"""What moto 5.2.5 does not answer the way AWS does, answered by the test, in the service's shapes.

The moto server is the stand-in for AWS in these tests; where it falls short, this module steps
in on the client side through botocore's own event hooks, the mechanism botocore's Stubber uses:

- EKS add-ons (CreateAddon, DescribeAddon, DeleteAddon, ListAddons) and FSx data repository
  associations (Create/Describe/DeleteDataRepositoryAssociation): moto has no such APIs. They
  are answered here, statefully, so a second run sees what the first created. Requests are
  validated by botocore against the real service model before they reach the handler (as with
  Stubber), and every answer is validated against the operation's output shape (as Stubber's
  add_response does), so a wrong field name on either side fails the test.
- Service Quotas GetServiceQuota / GetAWSDefaultServiceQuota: moto knows only VPC quotas. The EC2
  on-demand vCPU quotas of the local account are answered from ``quotas`` (a test may lower one).
- EC2 DescribeCapacityReservations: moto has no capacity reservations (its EC2 backend raises
  NotImplementedError). Answered from ``capacity_reservations`` (by id, in DescribeCapacity-
  Reservations' shape), which a test fills: an ODCR or a Capacity Block as AWS would describe it.
  EC2 speaks the query protocol, which the server-side middleware (local_stack/aws.py) does not
  route: there moto answers, and preflight reports the check unknown. moto's own launch templates
  keep CapacityReservationSpecification and InstanceMarketOptions as given, and its EKS
  CreateNodegroup takes a launchTemplate (and refuses diskSize with one, as EKS does).
- FSx DescribeFileSystems has no ``Lifecycle`` and no ``LustreConfiguration.MountName`` in moto:
  both are added, CREATING for the first look after a create, then AVAILABLE, as AWS reports.
- EKS CreateCluster's ``computeConfig`` (EKS Auto Mode) is ignored by moto: kept here and given
  back in DescribeCluster, so a test can make an Auto Mode cluster to adopt.
- EKS CreateCluster / CreateNodegroup answer ACTIVE at once in moto: the first look after a
  create says CREATING, so the waits (in the worker and in the triggerer) really poll. A node
  group a test dooms (``fail_creation``) then stays CREATING with a health issue, as one whose
  instances cannot launch does on AWS while its Auto Scaling group retries.
- EKS access entries (CreateAccessEntry, AssociateAccessPolicy): moto has none. Recorded here;
  given the control plane (``control_plane``), an entry associated with AmazonEKSClusterAdminPolicy
  maps its principal to system:masters in the local authenticator's aws-auth, what that access
  policy amounts to on EKS (EKS user guide, "Review access policy permissions").
- moto's EKS clusters have an endpoint and certificate authority that lead nowhere: given the
  kubeconfig of the local control plane (``control_plane``), every cluster is served by it, so
  the steps reach it the way they reach EKS (EksHook's kubeconfig, an IAM token checked by the
  control plane's token authenticator, local_stack/eks_authenticator.py).

It also injects failures (an error code, or a dropped connection) into chosen calls, and counts
the calls each operation received.

Installed in one of two ways, with the same answers:

- in a test process, by adding handlers to ``botocore.handlers.BUILTIN_HANDLERS``: every botocore
  session created afterwards (boto3's for the tasks, aiobotocore's for the triggers, the tests'
  own clients) registers them, so the tasks see exactly what the assertions see;
- in front of the moto server (local_stack/aws.py), for Airflow's own processes (scheduler
  workers, triggerer), which share no memory: ``answer`` and ``complete`` take the request's
  operation and parameters and give what the handlers would.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

ACCOUNT = "123456789012"  # moto's default account
# The local account's on-demand vCPU quotas (Service Quotas, ec2): two 192-vCPU nodes (p5.48xlarge,
# trn2.48xlarge) of each accelerator family. A new AWS account often starts lower; a stand-in value.
VCPU_QUOTAS = {"L-417A185B": ("Running On-Demand P instances", 384.0),
               "L-DB2E81BA": ("Running On-Demand G and VT instances", 384.0),
               "L-2C3B7624": ("Running On-Demand Trn instances", 384.0),
               "L-1945791B": ("Running On-Demand Inf instances", 384.0)}
# botocore's name for a service where it differs from the endpoint prefix a request is signed for.
BOTOCORE_NAMES = {"servicequotas": "service-quotas"}


def cluster_endpoint(kubeconfig: str) -> dict[str, Any]:
    """The API server's URL and CA (base64 PEM) from a kubeconfig, as EKS describes a cluster's."""
    import base64
    from pathlib import Path

    import yaml

    cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority-data") or base64.b64encode(
        (Path(kubeconfig).parent / cluster["certificate-authority"]).read_bytes()).decode()
    return {"endpoint": cluster["server"], "certificateAuthority": {"data": ca}}


def _error(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    return (AWSResponse("https://gaps.local", status, {}, None),
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}})


# What is created and reports CREATING for a while, by the first element of its key here.
HOLD_KINDS = ("cluster", "nodegroup", "fs", "addon", "association")


class AwsGaps:
    def __init__(self, settle_s: float = 0.0, control_plane: str | None = None,
                 holds: dict[str, float] | None = None) -> None:
        """``settle_s``: how long a created resource keeps reporting CREATING at least (besides
        its first look); 0 in the tests, which count looks rather than wait. ``holds``: that time
        for one kind (``HOLD_KINDS``), a delaying layer standing in for AWS's own creation times
        (benchmarks/critical_path.py). ``control_plane``: the kubeconfig of the API server that
        serves every EKS cluster."""
        unknown = set(holds or {}) - set(HOLD_KINDS)
        if unknown:
            raise ValueError(f"holds: unknown kind(s) {sorted(unknown)}; kinds are {', '.join(HOLD_KINDS)}")
        self.settle_s = settle_s
        self.holds = dict(holds or {})
        self.control_plane = control_plane
        self.cluster_endpoint = cluster_endpoint(control_plane) if control_plane else None
        self.access_entries: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.ready_at: dict[tuple[str, ...], float] = {}
        self.lock = threading.Lock()
        self.addons: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.associations: dict[str, dict[str, Any]] = {}
        self.creating: Counter[tuple[str, ...]] = Counter()  # looks left that report CREATING
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, list[Any]] = {}
        self.doomed: dict[tuple[str, ...], dict[str, str]] = {}  # node group -> the health issue it reports
        self.ids = itertools.count(1)
        self.quotas = dict(VCPU_QUOTAS)
        self.capacity_reservations: dict[str, dict[str, Any]] = {}
        self.compute_configs: dict[tuple[str, ...], dict[str, Any] | None] = {}  # cluster -> EKS Auto Mode's

    # -- installation -------------------------------------------------------------------------
    # Operations moto lacks, answered here; and moto answers completed here, by the handler's name.
    ANSWERED = {
        "ec2": ("DescribeCapacityReservations",),
        "eks": ("CreateAddon", "DescribeAddon", "DeleteAddon", "ListAddons", "CreateAccessEntry",
                "AssociateAccessPolicy"),
        "fsx": ("CreateDataRepositoryAssociation", "DescribeDataRepositoryAssociations",
                "DeleteDataRepositoryAssociation"),
        "servicequotas": ("GetServiceQuota", "GetAWSDefaultServiceQuota"),
    }
    COMPLETED = {
        ("fsx", "CreateFileSystem"): "_fs_created", ("fsx", "DescribeFileSystems"): "_fs_described",
        ("eks", "CreateCluster"): "_eks_created", ("eks", "CreateNodegroup"): "_eks_created",
        ("eks", "DescribeCluster"): "_eks_described", ("eks", "DescribeNodegroup"): "_eks_described",
    }

    def handlers(self) -> list[tuple[str, Any]]:
        specs: list[tuple[str, Any]] = [("before-parameter-build.*.*", self._remember_params),
                                        ("before-call.*.*", self._before_call)]
        for service, operations in self.ANSWERED.items():
            for operation in operations:
                specs.append((f"before-call.{BOTOCORE_NAMES.get(service, service)}.{operation}",
                              getattr(self, f"_{service}_{operation}")))
        specs.append(("after-call.*.*", self._after_call))
        specs += [(f"after-call.{service}.{operation}", getattr(self, name))
                  for (service, operation), name in self.COMPLETED.items()]
        return specs

    # -- the same answers for a server in front of moto ---------------------------------------
    def answer(self, model, params: dict[str, Any], region: str) -> tuple[int, dict[str, Any]]:
        """The status and parsed answer to an operation in ``ANSWERED``."""
        service = model.service_model.endpoint_prefix
        handler = getattr(self, f"_{service}_{model.name}")
        http, parsed = handler(model=model, context={"gaps_params": params, "client_region": region})
        return http.status_code, parsed

    def complete(self, model, parsed: dict[str, Any], status: int, params: dict[str, Any], region: str) -> None:
        """Complete moto's parsed answer in place, for an operation in ``COMPLETED`` called with ``params``."""
        name = self.COMPLETED[(model.service_model.endpoint_prefix, model.name)]
        getattr(self, name)(parsed=parsed, http_response=AWSResponse("https://gaps.local", status, {}, None),
                            context={"gaps_params": params, "client_region": region})

    def fail(self, operation: str, error: Any, times: int = 1, **match: Any) -> None:
        """Make the next ``times`` calls of ``operation`` ("service.Operation") fail with ``error``:
        an error code (answered as AWS answers errors) or an exception instance (raised, as a
        dropped connection would be). ``match`` narrows it to calls with those parameters
        (``nodegroupName=...``): steps that run side by side call the same operation."""
        self.failures.setdefault(operation, []).extend([(error, match)] * times)

    def lose_response(self, operation: str, error: BaseException, times: int = 1, **match: Any) -> None:
        """Let the next ``times`` calls of ``operation`` reach AWS (moto) and take effect, then
        raise ``error`` instead of the answer: a create that happened although the caller never
        heard back, the case ensure-never-duplicate is for. ``match`` as for ``fail``."""
        self.failures.setdefault(f"after:{operation}", []).extend([(error, match)] * times)

    def _take(self, key: str, context: dict[str, Any]) -> Any:
        """The first injected failure for ``key`` whose ``match`` the call's parameters meet."""
        params = context.get("gaps_params") or {}
        with self.lock:
            pending = self.failures.get(key) or []
            for i, (_, match) in enumerate(pending):
                if all(params.get(k) == v for k, v in match.items()):
                    return pending.pop(i)[0]
        return None

    def fail_creation(self, region: str, cluster: str, nodegroup: str, code: str = "InsufficientFreeAddresses",
                      message: str = "injected by the test") -> None:
        """The node group, once created, stays CREATING with this health issue (code and message,
        EKS's Issue shape), as one whose instances cannot launch does: a p5 without capacity
        reports AsgInstanceLaunchFailures with EC2's InsufficientInstanceCapacity in the message."""
        self.doomed[("nodegroup", region, cluster, nodegroup)] = {"code": code, "message": message}

    def _started_creating(self, key: tuple[str, ...]) -> None:
        self.creating[key] = 1
        self.ready_at[key] = time.monotonic() + self.holds.get(key[0], self.settle_s)

    def _still_creating(self, key: tuple[str, ...]) -> bool:
        """Whether this look still sees it CREATING: the first look after the create always does."""
        if self.creating[key] > 0:
            self.creating[key] -= 1
            return True
        return time.monotonic() < self.ready_at.get(key, 0.0)

    # -- plumbing -----------------------------------------------------------------------------
    def _after_call(self, model, context, **_):
        error = self._take(f"after:{model.service_model.endpoint_prefix}.{model.name}", context)
        if error is not None:
            raise error

    @staticmethod
    def _remember_params(params, context, **_):
        context["gaps_params"] = dict(params)

    def _before_call(self, model, context, **_):
        operation = f"{model.service_model.endpoint_prefix}.{model.name}"
        with self.lock:
            self.calls[operation] += 1
        error = self._take(operation, context)
        if error is None:
            return None
        if isinstance(error, BaseException):
            raise error
        return _error(error, f"injected by the test: {error}")

    @staticmethod
    def _answer(model, response: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        # As Stubber.add_response does: the answer must fit the operation's output shape.
        report = validate_parameters(response, model.output_shape)  # raises ParamValidationError
        if report is not None:
            raise ParamValidationError(report=str(report))
        return AWSResponse("https://gaps.local", 200, {}, None), {**response, "ResponseMetadata": {"HTTPStatusCode": 200}}

    @staticmethod
    def _region(context) -> str:
        return context["client_region"]

    # -- EKS add-ons --------------------------------------------------------------------------
    @staticmethod
    def _cluster_exists(region: str, name: str) -> bool:
        from moto.eks.models import eks_backends

        return name in eks_backends[ACCOUNT][region].clusters

    def _on_cluster(self, context, member: str) -> tuple[tuple[str, str, str], Any]:
        """(region, cluster, the ``member`` parameter) of a call on something of a cluster's (an
        add-on, an access entry), and EKS's not-found answer when the cluster is not there."""
        params = context["gaps_params"]
        key = (self._region(context), params["clusterName"], params.get(member, ""))
        if not self._cluster_exists(key[0], key[1]):
            return key, _error("ResourceNotFoundException", f"No cluster found for name: {key[1]}.", 404)
        return key, None

    def _addon(self, context) -> tuple[tuple[str, str, str], Any]:
        key, missing = self._on_cluster(context, "addonName")
        if missing:
            # Add-ons go with their cluster.
            for stale in [k for k in self.addons if k[:2] == key[:2]]:
                del self.addons[stale]
        return key, missing

    def _existing_addon(self, context) -> tuple[tuple[str, str, str], Any]:
        """As ``_addon``, and EKS's not-found answer when the cluster is there but the add-on is not."""
        key, missing = self._addon(context)
        if missing is None and key not in self.addons:
            missing = _error("ResourceNotFoundException", f"No addon: {key[2]} found in cluster: {key[1]}", 404)
        return key, missing

    def _eks_CreateAccessEntry(self, model, context, **_):
        with self.lock:
            key, missing = self._on_cluster(context, "principalArn")
            if missing:
                return missing
            if key in self.access_entries:
                return _error("ResourceInUseException", f"The specified access entry resource is already in use on "
                              f"this cluster: {key[2]}", 409)
            now = datetime.now(UTC)
            self.access_entries[key] = {
                "clusterName": key[1], "principalArn": key[2], "kubernetesGroups": [], "username": key[2],
                "accessEntryArn": f"arn:aws:eks:{key[0]}:{ACCOUNT}:access-entry/{key[1]}/{next(self.ids)}",
                "createdAt": now, "modifiedAt": now, "tags": {}, "type": "STANDARD"}
            return self._answer(model, {"accessEntry": self.access_entries[key]})

    def _eks_AssociateAccessPolicy(self, model, context, **_):
        with self.lock:
            key, missing = self._on_cluster(context, "principalArn")
            if missing is None and key not in self.access_entries:
                missing = _error("ResourceNotFoundException", f"The specified principalArn could not be found: {key[2]}",
                                 404)
            if missing:
                return missing
            params, now = context["gaps_params"], datetime.now(UTC)
        if self.control_plane and params["policyArn"].endswith("/AmazonEKSClusterAdminPolicy"):
            from local_stack.eks_authenticator import map_identity

            map_identity(self.control_plane, key[2], key[2].rsplit("/", 1)[1], ["system:masters"])
        return self._answer(model, {"clusterName": key[1], "principalArn": key[2], "associatedAccessPolicy": {
            "policyArn": params["policyArn"], "accessScope": dict(params["accessScope"]), "associatedAt": now,
            "modifiedAt": now}})

    def _eks_CreateAddon(self, model, context, **_):
        with self.lock:
            key, missing = self._addon(context)
            if missing:
                return missing
            if key in self.addons:
                return _error("ResourceInUseException", f"Addon already exists: {key[2]}", 409)
            params = context["gaps_params"]
            self.addons[key] = {
                "addonName": key[2], "clusterName": key[1], "status": "CREATING", "addonVersion": "v1.0.0-eksbuild.1",
                "health": {"issues": []}, "createdAt": datetime.now(UTC), "modifiedAt": datetime.now(UTC),
                "addonArn": f"arn:aws:eks:{key[0]}:{ACCOUNT}:addon/{key[1]}/{key[2]}/{next(self.ids)}",
                "tags": dict(params.get("tags") or {}),
            }
            self._started_creating(("addon", *key))
            return self._answer(model, {"addon": self.addons[key]})

    def _eks_DescribeAddon(self, model, context, **_):
        with self.lock:
            key, missing = self._existing_addon(context)
            if missing:
                return missing
            addon = self.addons[key]
            if addon["status"] == "CREATING" and not self._still_creating(("addon", *key)):
                addon["status"] = "ACTIVE"
            return self._answer(model, {"addon": addon})

    def _eks_DeleteAddon(self, model, context, **_):
        with self.lock:
            key, missing = self._existing_addon(context)
            if missing:
                return missing
            return self._answer(model, {"addon": {**self.addons.pop(key), "status": "DELETING"}})

    def _eks_ListAddons(self, model, context, **_):
        with self.lock:
            key, missing = self._addon(context)
            if missing:
                return missing
            return self._answer(model, {"addons": sorted(k[2] for k in self.addons if k[:2] == key[:2])})

    # -- FSx data repository associations -----------------------------------------------------
    @staticmethod
    def _file_system_exists(region: str, file_system_id: str) -> bool:
        from moto.fsx.models import fsx_backends

        return file_system_id in fsx_backends[ACCOUNT][region].file_systems

    def _live_associations(self, region: str) -> list[dict[str, Any]]:
        for association_id, association in list(self.associations.items()):
            if association["_region"] == region and not self._file_system_exists(region, association["FileSystemId"]):
                del self.associations[association_id]  # associations go with their file system
        return [a for a in self.associations.values() if a["_region"] == region]

    @staticmethod
    def _public(association: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in association.items() if not k.startswith("_")}

    def _fsx_CreateDataRepositoryAssociation(self, model, context, **_):
        params, region = context["gaps_params"], self._region(context)
        with self.lock:
            if not self._file_system_exists(region, params["FileSystemId"]):
                return _error("FileSystemNotFound", f"File system {params['FileSystemId']} was not found")
            for existing in self._live_associations(region):
                if (existing["FileSystemId"], existing["FileSystemPath"]) == (params["FileSystemId"],
                                                                              params["FileSystemPath"]):
                    return _error("BadRequest", f"{params['FileSystemPath']} is already linked")
            association_id = f"dra-{next(self.ids):017x}"
            association = {
                "AssociationId": association_id,
                "ResourceARN": f"arn:aws:fsx:{region}:{ACCOUNT}:association/{params['FileSystemId']}/{association_id}",
                "FileSystemId": params["FileSystemId"], "Lifecycle": "CREATING",
                "FileSystemPath": params["FileSystemPath"], "DataRepositoryPath": params["DataRepositoryPath"],
                "BatchImportMetaDataOnCreate": params.get("BatchImportMetaDataOnCreate", False),
                "ImportedFileChunkSize": 1024, "S3": params.get("S3", {}),
                "CreationTime": datetime.now(UTC), "_region": region,
                **({"Tags": params["Tags"]} if params.get("Tags") else {}),  # AWS omits an empty list
            }
            self.associations[association_id] = association
            self._started_creating(("association", association_id))
            return self._answer(model, {"Association": self._public(association)})

    def _fsx_DescribeDataRepositoryAssociations(self, model, context, **_):
        params, region = context["gaps_params"], self._region(context)
        with self.lock:
            found = self._live_associations(region)
            if params.get("AssociationIds"):
                missing = set(params["AssociationIds"]) - {a["AssociationId"] for a in found}
                if missing:
                    return _error("DataRepositoryAssociationNotFound", f"{sorted(missing)} not found")
                found = [a for a in found if a["AssociationId"] in params["AssociationIds"]]
            for f in params.get("Filters", []):
                if f["Name"] == "file-system-id":
                    found = [a for a in found if a["FileSystemId"] in f["Values"]]
            for association in found:
                key = ("association", association["AssociationId"])
                if association["Lifecycle"] == "CREATING" and not self._still_creating(key):
                    association["Lifecycle"] = "AVAILABLE"
            return self._answer(model, {"Associations": [self._public(a) for a in found]})

    def _fsx_DeleteDataRepositoryAssociation(self, model, context, **_):
        params, region = context["gaps_params"], self._region(context)
        with self.lock:
            live = {a["AssociationId"] for a in self._live_associations(region)}
            if params["AssociationId"] not in live:
                return _error("DataRepositoryAssociationNotFound", f"{params['AssociationId']} not found")
            self.associations.pop(params["AssociationId"])
            return self._answer(model, {"AssociationId": params["AssociationId"], "Lifecycle": "DELETING",
                                        "DeleteDataInFileSystem": False})

    # -- EC2 capacity reservations -------------------------------------------------------------
    def _ec2_DescribeCapacityReservations(self, model, context, **_):
        wanted = context["gaps_params"].get("CapacityReservationIds") or []
        with self.lock:
            missing = [i for i in wanted if i not in self.capacity_reservations]
            if missing:
                return _error("InvalidCapacityReservationId.NotFound",
                              f"The capacity reservation ID '{missing[0]}' does not exist")
            found = [self.capacity_reservations[i] for i in wanted or self.capacity_reservations]
            return self._answer(model, {"CapacityReservations": found})

    # -- Service Quotas ------------------------------------------------------------------------
    def _servicequotas_GetServiceQuota(self, model, context, **_):
        params = context["gaps_params"]
        with self.lock:
            known = self.quotas.get(params["QuotaCode"]) if params["ServiceCode"] == "ec2" else None
        if known is None:
            return _error("NoSuchResourceException", f"quota {params['QuotaCode']} of {params['ServiceCode']} "
                                                     "is not known to the local account")
        name, value = known
        return self._answer(model, {"Quota": {"ServiceCode": "ec2", "QuotaCode": params["QuotaCode"],
                                              "QuotaName": name, "Value": value, "Unit": "None",
                                              "Adjustable": True, "GlobalQuota": False}})

    _servicequotas_GetAWSDefaultServiceQuota = _servicequotas_GetServiceQuota

    # -- moto answers completed ---------------------------------------------------------------
    @staticmethod
    def _mount_name(file_system_id: str) -> str:
        return hashlib.sha256(file_system_id.encode()).hexdigest()[:8]

    def _fs_created(self, parsed, **_):
        fs = parsed.get("FileSystem")
        if fs:
            with self.lock:
                self._started_creating(("fs", fs["FileSystemId"]))
            fs["Lifecycle"] = "CREATING"
            fs.setdefault("LustreConfiguration", {})["MountName"] = self._mount_name(fs["FileSystemId"])

    def _fs_described(self, parsed, **_):
        with self.lock:
            for fs in parsed.get("FileSystems", []):
                key = ("fs", fs["FileSystemId"])
                if self._still_creating(key):
                    fs["Lifecycle"] = "CREATING"
                else:
                    fs["Lifecycle"] = "AVAILABLE"
                if fs.get("FileSystemType") == "LUSTRE":
                    fs.setdefault("LustreConfiguration", {})["MountName"] = self._mount_name(fs["FileSystemId"])

    def _eks_key(self, parsed, context) -> tuple[str, ...] | None:
        """What an EKS answer is about. Names are regional: one cluster name in two regions (the
        demo's llm-demo) is two clusters, each CREATING for its own time."""
        region = self._region(context)
        if "cluster" in parsed:
            return ("cluster", region, parsed["cluster"]["name"])
        if "nodegroup" in parsed:
            return ("nodegroup", region, parsed["nodegroup"]["clusterName"], parsed["nodegroup"]["nodegroupName"])
        return None

    def _eks_created(self, parsed, http_response, context, **_):
        key = self._eks_key(parsed, context)
        if key and http_response.status_code < 300:
            with self.lock:
                self._started_creating(key)
                if key[0] == "cluster":
                    self.compute_configs[key] = context["gaps_params"].get("computeConfig")
            (parsed.get("cluster") or parsed.get("nodegroup"))["status"] = "CREATING"
            self._served_here(parsed)

    def _served_here(self, parsed) -> None:
        if self.cluster_endpoint and "cluster" in parsed:
            parsed["cluster"].update(self.cluster_endpoint)

    def _eks_described(self, parsed, http_response, context, **_):
        key = self._eks_key(parsed, context)
        if key and http_response.status_code < 300:
            self._served_here(parsed)
            with self.lock:
                if self.compute_configs.get(key):
                    parsed["cluster"]["computeConfig"] = self.compute_configs[key]
                if self._still_creating(key):
                    (parsed.get("cluster") or parsed.get("nodegroup"))["status"] = "CREATING"
                elif key in self.doomed:
                    group = parsed["nodegroup"]
                    groups = [g["name"] for g in (group.get("resources") or {}).get("autoScalingGroups") or []]
                    group.update(status="CREATING", health={"issues": [{**self.doomed[key], "resourceIds": groups}]})
