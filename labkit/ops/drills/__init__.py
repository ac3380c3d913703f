"""One module per drill, each defining ``DRILL`` (a :class:`labkit.ops.drill.Drill`);
:func:`labkit.ops.drill.drills` finds them."""
