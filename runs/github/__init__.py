"""The GitHub Action bot: a labelled issue (or a command comment) in, a draft pull request out.

`client` talks to GitHub's REST API, `events` decides from an event payload whether to run, `bot` runs the
flow (status comment, fix, branch, pull request, job summary) and `command` is the `patchfleet bot` CLI.
"""
