"""tunery.flows"""
