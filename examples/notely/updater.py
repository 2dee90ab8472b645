def banner(version: str) -> str:
    return f"Notely {version}: 0 notes"
