"""Policy as code: rules (plain functions) over a stack's planned resources and registry evidence."""
