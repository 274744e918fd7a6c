"""tunery.training"""
