"""ctrld's wire protocol: the schema (ctrld.fbs), its generated code and the framing codec."""
