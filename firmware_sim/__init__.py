"""Cards and reader firmware simulated at the wire, so CI drives the real driver stacks."""
