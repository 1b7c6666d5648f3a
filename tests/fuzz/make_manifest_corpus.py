#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_manifest (tests/fuzz/corpus_manifest/):
each example manifest as JSON and as msgpack, plus small hostile documents.
Plain Python (a minimal msgpack encoder below); run from the repository root:
    python3 tests/fuzz/make_manifest_corpus.py
"""
import glob
import json
import os
import struct

OUT = "tests/fuzz/corpus_manifest"


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) < 256:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))
        return head + b"".join(pack(e) for e in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))
        return head + b"".join(pack(k) + pack(e) for k, e in v.items())
    raise TypeError(type(v))


def main():
    os.makedirs(OUT, exist_ok=True)
    for path in sorted(glob.glob("examples/manifests/*.json")):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, "rb") as f:
            text = f.read()
        doc = json.loads(text)
        with open(f"{OUT}/{name}.json", "wb") as f:
            f.write(text)
        with open(f"{OUT}/{name}.msgpack", "wb") as f:
            f.write(pack(doc))
    hostile = {
        "huge_map.msgpack": b"\xdf\xff\xff\xff\xff",
        "huge_array.msgpack": b"\x81\xa1a\xdd\x7f\xff\xff\xff\x00",
        "deep.msgpack": b"\x91" * 40 + b"\x00",
        "bin.msgpack": b"\x81\xa6format\xc4\x01\x00",
        "ext.msgpack": b"\x81\xa1k\xd4\x05\x00",
        "deep.json": b"[" * 40 + b"]" * 40,
        "dup.json": b'{"format": "nnmod.manifest", "format": 1}',
        "empty_strings.msgpack": b"\x81\xa0\xa0",  # found by fuzzing: NULL + 0
        # found by CI's fuzz run: a JSON key over 255 bytes parsed but its
        # msgpack twin did not (keys now have one bound in both encodings)
        "long_key.json": json.dumps({
            "format": "nnmod.manifest", "version": 1, "plugins": {"relu": "^1.0"},
            "root": {"type": "relu"}, "metadata": {"k" * 256: "v", "k" * 255: "v"},
        }).encode(),
        "longest_key.json": json.dumps({
            "format": "nnmod.manifest", "version": 1, "plugins": {"relu": "^1.0"},
            "root": {"type": "relu"}, "metadata": {"k" * 255: "v"},
        }).encode(),
    }
    # Graphs that reach the deeper parts of the wiring checks: multi-output
    # refs, several inputs, descendants of a module_list, a cycle, a
    # dangling ref, nested graphs.
    def graph(inputs, nodes, outputs, children):
        return json.dumps({
            "format": "nnmod.manifest", "version": 1,
            "plugins": {"graph": "^1.0", "add": "^1.0", "relu": "^1.0", "identity": "^1.0",
                        "linear": "^1.0", "module_list": "^1.0"},
            "root": {"type": "graph",
                     "config": {"inputs": inputs, "nodes": nodes, "outputs": outputs},
                     "children": children}}).encode()
    relu = lambda n: {"name": n, "type": "relu"}
    add = lambda n: {"name": n, "type": "add"}
    hostile["graph_two_inputs.json"] = graph(
        ["x", "y"], ["a: x", "b: y", "s: a, b", "t: s, x"], ["t", "a"],
        [relu("a"), relu("b"), add("s"), add("t")])
    hostile["graph_list.json"] = graph(
        ["x"], ["blocks.0: x", "blocks.1: blocks.0", "s: blocks.1, x"], ["s"],
        [{"name": "blocks", "type": "module_list", "children": [relu("0"), relu("1")]}, add("s")])
    hostile["graph_cycle.json"] = graph(
        ["x"], ["a: b", "b: a"], ["b"], [relu("a"), relu("b")])
    hostile["graph_dangling.json"] = graph(
        ["x"], ["a: x", "s: a, z:1"], ["s"], [relu("a"), add("s")])
    hostile["graph_nested.json"] = graph(
        ["x"], ["inner: x", "s: inner, x"], ["s"],
        [{"name": "inner", "type": "graph",
          "config": {"inputs": ["u"], "nodes": ["r: u"], "outputs": ["r", "u"]},
          "children": [relu("r")]}, add("s")])
    # Wide modules: past 16 children a module looks names up through an
    # index (runtime/module/module.c); unnamed children are named by their index.
    hostile["wide.msgpack"] = pack({
        "format": "nnmod.manifest", "version": 1,
        "plugins": {"sequential": "^1.0", "relu": "^1.0", "identity": "^1.0"},
        "root": {"type": "sequential", "children": [
            {"type": "relu"} if i % 3 else {"name": f"c{i}", "type": "identity"}
            for i in range(40)]}})
    # a config past 16 keys (its key index); relu refuses them after reading
    hostile["wide_config.json"] = json.dumps({
        "format": "nnmod.manifest", "version": 1, "plugins": {"relu": "^1.0"},
        "root": {"type": "relu", "config": {f"k{i}": i for i in range(24)}}}).encode()
    hostile["graph_wide_list.json"] = graph(
        ["x"], [f"blocks.{i}: " + (f"blocks.{i - 1}" if i else "x") for i in range(20)],
        ["blocks.19"],
        [{"name": "blocks", "type": "module_list", "children": [relu(str(i)) for i in range(20)]}])
    # The graph language v2: "NODE = PATH(REF, ...)" beside v1 entries, one
    # module called by several nodes, names in backticks, graph-owned
    # parameters and buffers used as REFs and returned.
    def graph2(config, children):
        return json.dumps({
            "format": "nnmod.manifest", "version": 1,
            "plugins": {"graph": "^1.1", "add": "^1.0", "mul": "^1.0", "relu": "^1.0",
                        "linear": "^1.0", "module_dict": "^1.0"},
            "root": {"type": "graph", "config": config, "children": children}},
            ensure_ascii=False).encode()
    lin = lambda n: {"name": n, "type": "linear", "config": {"in_features": 2, "out_features": 2}}
    hostile["graph_v2_shared.json"] = graph2(
        {"nodes": ["h = fc(x)", "a = act(h)", "h2 = fc(a)", "y = act(h2)", "sum: y, x"]},
        [lin("fc"), relu("act"), add("sum")])
    hostile["graph_v2_names.json"] = graph2(
        {"inputs": ["x"],
         "nodes": ["block1-0: x", "`my block`: block1-0", "b = `a``b`(`my block`)",
                   "`the end` = heads.`cls:1`(b)", "e = `caf\u00e9`(`the end`)"],
         "outputs": ["e", "`my block`", "`the end`:0"]},
        [lin("block1-0"), relu("my block"), relu("a`b"),
         {"name": "heads", "type": "module_dict", "children": [lin("cls:1")]},
         relu("caf\u00e9")])
    hostile["graph_v2_params.json"] = graph2(
        {"parameters": ["cls: [1, 2] ones", "`layer-scale`: [2] normal(0, 0.02)",
                        "u: [] uniform(-1, 1)"],
         "buffers": ["mask: [2] f32 ones", "zero: [2, 0]"],
         "nodes": ["s = add(x, cls)", "y = mul(s, `layer-scale`)", "z = mul(y, mask)"],
         "outputs": ["z", "cls", "mask"]},
        [add("add"), {"name": "mul", "type": "mul"}])
    # Session 8 (hostile): what a stranger writes into the v2 language:
    # self-references, control bytes in backticks, unterminated quotes,
    # ports past any output, sizes whose product overflows int64, tensors
    # named like children, i64 buffers fed to f32 ops, output names that
    # collide, a view whose dynamic dims name inputs that are not there.
    hostile["graph_v2_self.json"] = graph2(
        {"nodes": ["a = act(a)", "b = act(x)"]}, [relu("act")])
    hostile["graph_v2_ctrl.json"] = graph2(
        {"nodes": ["`a\u001b[2J` = act(x)", "b = `ac\u0007t`(x)", "c = `act(x)"],
         "output_names": ["o\u009b"]}, [relu("act")])
    hostile["graph_v2_ports.json"] = graph2(
        {"nodes": ["a = act(x:1:2)", "b = act(x:99999999999999999999)", "c = act(a:15)"],
         "outputs": ["c:-1", "a:16"]}, [relu("act")])
    hostile["graph_v2_huge.json"] = graph2(
        {"parameters": ["w: [999999999999999999, 999999999999999999]",
                        "v: [4294967296, 4294967296, 4294967296]"],
         "buffers": ["b: [100000000000] i64", "c: [1, 2, 3, 4, 5, 6, 7, 8] i64 ones"],
         "nodes": ["s = add(x, w)"]}, [add("add")])
    hostile["graph_v2_collide.json"] = graph2(
        {"parameters": ["fc: [2]"], "buffers": ["idx: [2] i64 ones"],
         "nodes": ["a = fc(x)", "b = add(a, fc)", "c = add(b, idx)"],
         "outputs": ["c", "idx"], "output_names": ["out", "out"]},
        [lin("fc"), add("add")])
    hostile["graph_v2_dynamic.json"] = json.dumps({
        "format": "nnmod.manifest", "version": 1,
        "plugins": {"graph": "^1.1", "view": "*", "full": "*"},
        "root": {"type": "graph",
                 "config": {"inputs": ["x", "y"], "nodes": ["a = view(x, y)", "f = full(x)"]},
                 "children": [
                     {"name": "view", "type": "view",
                      "config": {"shape": [0, -1], "from_input": [99, -1],
                                 "from_dim": [-100, -1]}},
                     {"name": "full", "type": "full",
                      "config": {"size": [0, 3], "fill_value": 1.0,
                                 "from_input": [-9223372036854775807, -1],
                                 "from_dim": [9223372036854775807, -1]}}]}}).encode()
    # graph 1.2: constants (base64 of little-endian f32 / i64 values)
    hostile["graph_v2_constants.json"] = graph2(
        {"constants": ["c: [2] base64:AACAPwAAgP8=", "i: [1] i64 base64:+f////////8=",
                       "e: [0] base64:"],
         "nodes": ["s = add(x, c)", "z = mul(s, c)"],
         "outputs": ["z", "c", "i", "e"]},
        [add("add"), {"name": "mul", "type": "mul"}])
    # a huge constant shape with 8 bytes of text: once made the plugin
    # allocate the shape's 17 TB before checking the text (found by fuzz)
    hostile["graph_v2_constants_huge.json"] = graph2(
        {"constants": ["i: [2222222222221] i64 base64:+f////////8="],
         "nodes": ["s = add(x, i)"], "outputs": ["s"]},
        [add("add")])
    for name, data in hostile.items():
        with open(f"{OUT}/{name}", "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
