"""Our hand-written KServe protos must be wire-identical to the ones Triton's clients are
built from: every message and field dfserve declares is compared, by gRPC reflection against
the running server, with the descriptors shipped in the tritonclient wheel."""
import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.grpc import model_config_pb2, service_pb2


def fields(desc):
    return {f.name: (f.number, f.type, f.label, f.message_type.full_name if f.message_type else None) for f in desc.fields}


def compare(ours, theirs, seen):
    if ours.full_name in seen:
        return
    seen.add(ours.full_name)
    o, t = fields(ours), fields(theirs)
    for name, spec in o.items():
        assert name in t, f"{ours.full_name}.{name} is not in Triton's schema"
        assert spec == t[name], f"{ours.full_name}.{name}: ours {spec}, Triton {t[name]}"
        f = ours.fields_by_name[name]
        if f.message_type is not None:
            compare(f.message_type, theirs.fields_by_name[name].message_type, seen)


def test_kserve_protos_match_triton(server):
    channel = grpc.insecure_channel(server.grpc)
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    svc = pool.FindServiceByName("inference.GRPCInferenceService")
    triton_svc = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    seen = set()
    assert len(svc.methods) == 8
    for m in svc.methods:
        tm = triton_svc.methods_by_name[m.name]
        assert m.input_type.full_name == tm.input_type.full_name
        assert m.output_type.full_name == tm.output_type.full_name
        compare(m.input_type, tm.input_type, seen)
        compare(m.output_type, tm.output_type, seen)
    for enum in ["inference.DataType"]:
        ours = {v.name: v.number for v in pool.FindEnumTypeByName(enum).values}
        theirs = {v.name: v.number for v in model_config_pb2.DESCRIPTOR.enum_types_by_name["DataType"].values}
        assert ours == theirs
    assert "inference.ModelConfig" in seen and "inference.InferTensorContents" in seen
    # The dfserve API and health are discoverable too.
    assert pool.FindServiceByName("dfserve.v1.Detector").methods_by_name["DetectStream"].server_streaming
    assert pool.FindServiceByName("grpc.health.v1.Health")
