"""Measuring generators: Fréchet Attribute Distance and attribute coverage."""
