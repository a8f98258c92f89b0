"""Measuring tools kept beside the code they measure, outside the installed package."""
