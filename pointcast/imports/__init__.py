"""Imported segments: CreateImportJob and friends, the background jobs that run them, and IMPORT segment members."""
