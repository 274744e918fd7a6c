"""tunery.server"""
