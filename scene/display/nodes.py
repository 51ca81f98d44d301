"""A small node-tree builder: every method adds one node and returns its output socket.

Used for the splat display's Geometry Nodes group and material (:mod:`.tree`, :mod:`.material`)
and for rigging's live-rotation group. Nodes are placed on a grid in creation order so a built
tree is readable when opened in the node editor.
"""

from __future__ import annotations

import bpy

__all__ = ["NodeBuilder", "GeometryNodeBuilder", "grid_location", "layout_nodes",
           "versioned_node_group"]


class NodeBuilder:
    """Small builder: every method adds one node and returns its output socket."""

    def __init__(self, tree: bpy.types.NodeTree):
        self.tree = tree
        self.count = len(tree.nodes)

    def node(self, kind: str, inputs=(), **props) -> bpy.types.Node:
        node = self.tree.nodes.new(kind)
        # Placed on a grid in creation order, so the tree is readable when opened; set now,
        # while the tree is small, as every location change notifies the whole tree.
        node.location = grid_location(self.count)
        self.count += 1
        for key, value in props.items():
            setattr(node, key, value)
        for key, value in inputs:
            self.feed(node.inputs[key], value)
        return node

    def feed(self, socket, value) -> None:
        if isinstance(value, bpy.types.NodeSocket):
            self.tree.links.new(value, socket)
        elif value is not None:
            socket.default_value = value

    def math(self, op: str, a, b=None, c=None):
        node = self.node("ShaderNodeMath", [(0, a), (1, b), (2, c)], operation=op)
        return node.outputs[0]

    def add(self, a, b):
        return self.math("ADD", a, b)

    def sub(self, a, b):
        return self.math("SUBTRACT", a, b)

    def mul(self, a, b):
        return self.math("MULTIPLY", a, b)

    def div(self, a, b):
        return self.math("DIVIDE", a, b)

    def vmath(self, op: str, a, b=None, c=None, *, scale=None, out: int = 0):
        node = self.node("ShaderNodeVectorMath", [(0, a), (1, b), (2, c)], operation=op)
        if scale is not None:
            self.feed(node.inputs["Scale"], scale)
        return node.outputs[out]

    def vscale(self, v, s):
        return self.vmath("SCALE", v, scale=s)

    def dot(self, a, b):
        return self.vmath("DOT_PRODUCT", a, b, out=1)

    def xyz(self, x, y, z):
        return self.node("ShaderNodeCombineXYZ", [(0, x), (1, y), (2, z)]).outputs[0]

    def split(self, v):
        return tuple(self.node("ShaderNodeSeparateXYZ", [(0, v)]).outputs[:3])


class GeometryNodeBuilder(NodeBuilder):
    """The builder plus the Geometry Nodes that only geometry trees have."""

    @classmethod
    def start(cls, tree: bpy.types.NodeTree, inputs, outputs):
        """Declare a node group's interface and begin building it.

        ``inputs`` / ``outputs``: (name, socket type) or (name, socket type, default) items,
        e.g. ("Geometry", 'NodeSocketGeometry'). Returns (builder, the group input node's
        outputs, the group output node).
        """
        for in_out, items in (('INPUT', inputs), ('OUTPUT', outputs)):
            for name, socket_type, *default in items:
                socket = tree.interface.new_socket(name, in_out=in_out,
                                                   socket_type=socket_type)
                if default:
                    socket.default_value = default[0]
        g = cls(tree)
        return g, g.node("NodeGroupInput").outputs, g.node("NodeGroupOutput")

    def attribute(self, name: str, data_type: str):
        node = self.node("GeometryNodeInputNamedAttribute", [("Name", name)], data_type=data_type)
        return node.outputs[0]

    def compare(self, op: str, a, b):
        node = self.node("FunctionNodeCompare", [(0, a), (1, b)], data_type='FLOAT',
                         operation=op)
        return node.outputs[0]

    def both(self, a, b):
        return self.node("FunctionNodeBooleanMath", [(0, a), (1, b)],
                         operation='AND').outputs[0]

    def store(self, geometry, name: str, value, data_type: str, domain: str = 'POINT'):
        node = self.node("GeometryNodeStoreNamedAttribute", [(0, geometry), ("Name", name)],
                         data_type=data_type, domain=domain)
        self.feed(node.inputs["Value"], value)
        return node.outputs[0]

    def sample_index(self, geometry, value, index, data_type: str):
        """``value`` (a field on ``geometry``'s points) at point ``index``."""
        return self.node("GeometryNodeSampleIndex", [("Geometry", geometry), ("Value", value),
                                                     ("Index", index)],
                         data_type=data_type, domain='POINT').outputs[0]

    def capture(self, geometry, items) -> bpy.types.Node:
        """Capture Attribute holding (name, socket type, value) ``items`` on the points of
        ``geometry``, evaluated together; outputs named after the items."""
        node = self.node("GeometryNodeCaptureAttribute", [("Geometry", geometry)],
                         domain='POINT')
        for name, kind, _value in items:
            node.capture_items.new(kind, name)
        for name, _kind, value in items:
            self.feed(node.inputs[name], value)
        return node

    def store_together(self, geometry, items):
        """Store (attribute name, data type, value) ``items``, every value read from the input
        ``geometry``: captured first, since a store changes what later fields read."""
        kinds = {'FLOAT_VECTOR': 'VECTOR', 'QUATERNION': 'ROTATION', 'FLOAT': 'FLOAT'}
        captured = self.capture(geometry, [(name, kinds[data_type], value)
                                           for name, data_type, value in items])
        out = captured.outputs["Geometry"]
        for name, data_type, _value in items:
            out = self.store(out, name, captured.outputs[name], data_type)
        return out

    def group(self, tree: bpy.types.NodeTree, inputs=()) -> bpy.types.Node:
        """A group node running the node group ``tree`` (inputs by socket name)."""
        return self.node("GeometryNodeGroup", inputs, node_tree=tree)

    def pack_matrices(self, values: list) -> list:
        """Float sockets (or numbers) 16 to a 4×4 matrix, column by column; the last one
        padded with zeros."""
        out = []
        for start in range(0, len(values), 16):
            node = self.node("FunctionNodeCombineMatrix")
            for i in range(16):
                value = values[start + i] if start + i < len(values) else 0.0
                self.feed(node.inputs[f"Column {i // 4 + 1} Row {i % 4 + 1}"], value)
            out.append(node.outputs[0])
        return out

    def unpack_matrices(self, matrices: list) -> list:
        """The float sockets of :meth:`pack_matrices`' matrices, in packing order."""
        out = []
        for m in matrices:
            outs = self.node("FunctionNodeSeparateMatrix", [(0, m)]).outputs
            out += [outs[f"Column {i // 4 + 1} Row {i % 4 + 1}"] for i in range(16)]
        return out

    def matrix(self, m):
        """Separate Matrix → entries e[row][col]."""
        outs = self.node("FunctionNodeSeparateMatrix", [(0, m)]).outputs
        return [[outs[col * 4 + row] for col in range(4)] for row in range(4)]


def versioned_node_group(name: str, version: int, build, *,
                         tree_type: str = 'GeometryNodeTree') -> bpy.types.NodeTree:
    """The node group ``name`` of this file, made by ``build(tree)`` when it is missing or was
    built by another ``version`` of its builder (rebuilt in place, so its users keep it)."""
    tree = bpy.data.node_groups.get(name)
    if tree is not None and tree.get("gs_version") == version:
        return tree
    if tree is None:
        tree = bpy.data.node_groups.new(name, tree_type)
    else:
        tree.nodes.clear()
        tree.interface.clear()
    build(tree)
    tree["gs_version"] = version
    return tree


def grid_location(index: int) -> tuple[float, float]:
    return ((index // 20) * 220.0, -(index % 20) * 160.0)


def layout_nodes(tree) -> None:
    """Nodes not made by :class:`NodeBuilder` (group input/output, a few made directly) onto the
    grid too: those still at the origin."""
    for i, node in enumerate(tree.nodes):
        if node.location.length == 0.0:
            node.location = grid_location(i)
