"""Graph nodes: plan, guard, review (the tools node is LangGraph's prebuilt ToolNode)."""
