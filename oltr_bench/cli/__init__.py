import click


@click.group()
def main():
    """oltr-bench"""
