"""The sandbox's client side: start, find, stop and ask the sandbox service from any process.

Light on purpose (no moto, no boto3): ``labkit sandbox status`` imports only this.
"""
