"""patchfleet.data"""
