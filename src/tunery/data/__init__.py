"""tunery.data"""
