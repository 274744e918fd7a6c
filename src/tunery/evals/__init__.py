"""tunery.evals"""
