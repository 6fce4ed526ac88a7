"""The reference trainer that ftmon's recipes launch: `python -m trainer ...` (needs [train])."""
