"""patchfleet.selection"""
