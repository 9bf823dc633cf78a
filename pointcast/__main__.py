from pointcast.cli import main

if __name__ == "__main__":  # not when a planning process (multiprocessing, spawn) imports it
    main()
