"""Edits to an exported graph that the runtime relies on.

``keep_last_logits``: optimum's text-generation graph computes logits for every input
position, but a prefill only needs the last one. The lm_head of a 1.5B Qwen is 15 % of
its weights (1,536 x 151,936), so for a 64-token prefill chunk that is 63 wasted rows of
the largest matmul. The edit adds an input ``logits_to_keep`` (int64 scalar, like
transformers' argument of that name) and slices the hidden states to their last
``logits_to_keep`` positions before the lm_head. One-off timing on this 2-core machine (not a
benchmark: ``OnnxCausalLM.forward`` of 64 and 16 new tokens after 250 cached, the 1.5B int4 model,
old graph vs edited): 827 -> 668-681 ms and 225 -> 199 ms, one token unchanged; logits equal (max
difference 4e-6). The reproducible end-to-end effect is in ``companion bench``'s first-token time.

The edit touches only the graph, never the weights: the external data file is left as it is.
"""

from __future__ import annotations

from pathlib import Path

#: Name of the added input.
LOGITS_TO_KEEP = "logits_to_keep"


def keep_last_logits(model_path: Path) -> bool:
    """Add the ``logits_to_keep`` input to ``model_path`` in place; False when it is already there.

    The lm_head is the node that writes the ``logits`` output (a MatMul before quantisation, a
    MatMulNBits after); its first input is the hidden state that gets sliced."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    if any(i.name == LOGITS_TO_KEEP for i in graph.input):
        return False
    heads = [n for n in graph.node if "logits" in n.output]
    if len(heads) != 1 or heads[0].op_type not in ("MatMul", "MatMulNBits"):
        found = ", ".join(n.op_type for n in heads) or "none"
        raise ValueError(f"{model_path}: expected one MatMul writing 'logits', found {found}")
    head = heads[0]
    graph.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, []))
    graph.initializer.extend([
        helper.make_tensor("logits_to_keep/axes", TensorProto.INT64, [1], [0]),
        helper.make_tensor("logits_to_keep/end", TensorProto.INT64, [1], [2**62]),
        helper.make_tensor("logits_to_keep/seq_axis", TensorProto.INT64, [1], [1]),
    ])
    sliced = head.input[0] + "/last"
    nodes = [
        helper.make_node("Neg", [LOGITS_TO_KEEP], ["logits_to_keep/neg"], name="logits_to_keep/Neg"),
        helper.make_node("Unsqueeze", ["logits_to_keep/neg", "logits_to_keep/axes"], ["logits_to_keep/start"],
                         name="logits_to_keep/Unsqueeze"),
        helper.make_node("Slice", [head.input[0], "logits_to_keep/start", "logits_to_keep/end",
                                   "logits_to_keep/seq_axis"], [sliced], name="logits_to_keep/Slice"),
    ]
    head.input[0] = sliced
    at = list(graph.node).index(head)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    onnx.save(model, str(model_path))
    return True
