"""patchfleet.agent"""
