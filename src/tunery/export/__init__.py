"""tunery.export"""
