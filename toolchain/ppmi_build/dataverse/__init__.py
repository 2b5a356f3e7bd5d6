"""dataverse"""
