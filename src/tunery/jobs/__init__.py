"""tunery.jobs"""
