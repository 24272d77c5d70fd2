"""patchfleet.sandbox"""
