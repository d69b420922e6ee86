"""skl2onnx's default classifier output, a ZipMap, turned back into the tensor it zips.

``skl2onnx.to_onnx(clf, X)`` ends a classifier with ``ZipMap``: per row, a map of class ->
probability. onnxruntime returns that as a list of Python dicts, which signatures, batching and
JSON cannot carry, and which costs a dict per row. Replaced by ``Identity``, the same output
name carries the ``[rows, classes]`` float tensor the ZipMap read: columns in the order of its
class labels, which skl2onnx takes from ``classes_`` (what ``predict_proba`` returns).
"""

from __future__ import annotations

from typing import Any

from modelpack.errors import InvalidArgument

_HOW = (
    "Convert the classifier with skl2onnx.to_onnx(..., options={'zipmap': False}) to get the "
    "probabilities as a tensor."
)


def unzipped(onnx: Any, proto: Any) -> Any:
    """A copy of ``proto`` whose ZipMap outputs are probability tensors (``None``: no ZipMap).

    Raises:
        InvalidArgument: a ZipMap whose maps feed other nodes, sit inside a subgraph, or that
            the model cannot replace (no default-domain opset); the message says how to
            convert without ZipMap.
    """
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    consumed = {name for node in graph.node for name in node.input}
    top = [n for n in graph.node if _is_zipmap(n)]
    for node in top:
        if node.output[0] in consumed:
            raise InvalidArgument(
                f"The ZipMap output {node.output[0]!r} feeds other nodes, so it cannot be "
                f"served as a probabilities tensor. {_HOW}"
            )
    if _nested_zipmaps(graph):
        raise InvalidArgument(f"The model has a ZipMap inside a subgraph. {_HOW}")
    top = [n for n in top if n.output[0] in outputs]
    if not top:
        return None
    if not any((imp.domain or "") == "" for imp in proto.opset_import):
        raise InvalidArgument(f"The model imports no default-domain opset. {_HOW}")
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    replaced = {}
    for node in copy.graph.node:
        if _is_zipmap(node) and node.output[0] in outputs:
            labels = [a for a in node.attribute if a.name.startswith("classlabels_")]
            n_classes = len(labels[0].ints) + len(labels[0].strings) if labels else None
            node.op_type, node.domain = "Identity", ""
            del node.attribute[:]
            replaced[node.output[0]] = n_classes
    for out in copy.graph.output:
        if out.name in replaced:
            tensor = onnx.helper.make_tensor_type_proto(
                onnx.TensorProto.FLOAT, [None, replaced[out.name]]
            )
            out.type.CopyFrom(tensor)
    return copy


def _is_zipmap(node: Any) -> bool:
    return node.op_type == "ZipMap" and node.domain == "ai.onnx.ml"


def _nested_zipmaps(graph: Any) -> bool:
    subgraphs = [g for n in graph.node for a in n.attribute for g in (a.g, *a.graphs)]
    while subgraphs:
        sub = subgraphs.pop()
        for node in sub.node:
            if _is_zipmap(node):
                return True
            subgraphs.extend(g for a in node.attribute for g in (a.g, *a.graphs))
    return False
