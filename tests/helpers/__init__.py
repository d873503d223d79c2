"""Helpers more than one test module uses; test modules import nothing from each other."""
