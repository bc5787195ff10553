"""The GitOps side of Caspian: fleet repo in, placement commit out.

Pure core: fleet (parsing), deciding, rendering, messages, ledger.
Imperative shell: reconciling (the loop), gitrepo (pygit2), observing, cli.
"""
