from promptflow.core import tool


@tool
def prepare_examples() -> list[dict]:
    """Few-shot examples for the classifier (one per category it confuses most)."""
    return [
        {
            "url": "https://play.google.com/store/apps/details?id=com.spotify.music",
            "text_content": "Spotify: Music and Podcasts - Apps on Google Play. Install. 4.3 star. 1B+ downloads.",
            "category": "App",
            "evidence": "Both",
        },
        {
            "url": "https://www.imdb.com/title/tt0068646/",
            "text_content": "The Godfather (1972) - IMDb. Rating 9.2/10. Director Francis Ford Coppola. Cast.",
            "category": "Movie",
            "evidence": "Both",
        },
        {
            "url": "https://www.youtube.com/@veritasium",
            "text_content": "Veritasium - YouTube. 16M subscribers. Videos. Shorts. Playlists. Subscribe.",
            "category": "Channel",
            "evidence": "Both",
        },
    ]
