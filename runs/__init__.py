"""patchfleet.runs"""
